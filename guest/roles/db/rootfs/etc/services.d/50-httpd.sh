#!/bin/sh
# The db's HTTP interface: busybox httpd on port 80 with the sh CGIs under /srv/www/cgi-bin.
mkdir -p /var/log/erp-db
exec httpd -p 80 -h /srv/www
