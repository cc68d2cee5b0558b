# The customer's console: at login, show the latest invoices from the ERP web app, then a shell.
if [ "$(id -un)" = customer ] && [ -n "${PS1-}" ]; then
    echo "--- http://web.prod.example/ ---"
    curl -fsS --max-time 15 http://web.prod.example/ || echo "(the ERP web app did not answer)"
fi
