# Sourced by the CGI scripts of the db and app roles (busybox httpd).
# Set ACCESS_LOG before sourcing; every request is appended as "<UTC time> <REMOTE_ADDR> <METHOD> <URI>".
export PATH=/sbin:/usr/sbin:/bin:/usr/bin TZ=UTC

cgi_log() {
    # busybox httpd listens on IPv6 and reports IPv4 peers as "[::ffff:10.20.0.11]".
    addr=${REMOTE_ADDR:--}
    addr=${addr#[}
    addr=${addr%]}
    addr=${addr#::ffff:}
    mkdir -p "${ACCESS_LOG%/*}"
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $addr ${REQUEST_METHOD:--} ${REQUEST_URI:--}" >>"$ACCESS_LOG"
}

# cgi_header STATUS TYPE: busybox httpd passes output that starts with "HTTP/" through unchanged, so the CGI
# writes the whole status line itself (httpd does not translate a "Status:" header).
cgi_header() {
    printf 'HTTP/1.0 %s\r\nContent-Type: %s\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n' "$1" "$2"
}

# query_param NAME: prints the (undecoded) value of NAME from QUERY_STRING.
query_param() {
    echo "${QUERY_STRING:-}" | tr '&' '\n' | sed -n "s/^$1=//p" | head -n 1
}
