import RFB from '/novnc/core/rfb.js';

const screen = document.getElementById('screen');
const status = document.getElementById('status');
const token = new URLSearchParams(location.search).get('token') || '';
const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
const url = `${scheme}//${location.host}${screen.dataset.ws}?token=${encodeURIComponent(token)}`;

function show(state, text) {
    document.body.dataset.state = state;
    status.textContent = text;
}

try {
    const rfb = new RFB(screen, url);
    rfb.scaleViewport = true;
    rfb.background = '#202124';
    rfb.addEventListener('connect', () => show('connected', 'connected'));
    rfb.addEventListener('disconnect', (e) => show('disconnected',
        e.detail.clean ? 'disconnected (the lab may have expired)' : 'connection lost'));
    rfb.addEventListener('credentialsrequired', () => show('error', 'the console asked for a password'));
    rfb.addEventListener('desktopname', (e) => { document.title = `${e.detail.name}: reclab console`; });
    document.getElementById('cad').addEventListener('click', () => rfb.sendCtrlAltDel());
    window.reclabConsole = rfb;
} catch (e) {
    show('error', `cannot start the console: ${e}`);
}
