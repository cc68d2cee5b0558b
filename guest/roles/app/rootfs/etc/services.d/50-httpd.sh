#!/bin/sh
# erp-web: busybox httpd on port 80. /version is served from a copy of /etc/erp-web/version made at start.
mkdir -p /var/log/erp-web
cp /etc/erp-web/version /srv/www/version
exec httpd -p 80 -h /srv/www
