# Shared part of /cgi-bin/latest and /cgi-bin/latest.txt: fetches the db stats and the 10 newest invoices.
ACCESS_LOG=/var/log/erp-web/access.log
. /usr/lib/reclab/cgi.sh
cgi_log
DB_URL=http://db.prod.example
[ -f /etc/erp-web/erp-web.conf ] && . /etc/erp-web/erp-web.conf
VERSION=$(cat /etc/erp-web/version 2>/dev/null || echo "erp-web unknown")
STATS=
INVOICES=
db_ok=no
if STATS=$(timeout 5 wget -q -O - "$DB_URL/cgi-bin/stats" 2>/dev/null) &&
    INVOICES=$(timeout 5 wget -q -O - "$DB_URL/cgi-bin/invoices?n=10" 2>/dev/null); then
    db_ok=yes
fi
