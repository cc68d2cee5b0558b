// The lab page's times, for the person reading it: every <time datetime="RFC 3339"> is shown in
// the browser's own time zone (the server writes UTC, to the minute, as the fallback text).
'use strict';
(function () {
    const fmt = new Intl.DateTimeFormat(undefined, {
        year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
        timeZoneName: 'short',
    });
    const clock = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
    for (const t of document.querySelectorAll('time[datetime]')) {
        const d = new Date(t.getAttribute('datetime'));
        if (isNaN(d.getTime())) continue;
        t.title = t.textContent;
        t.textContent = t.classList.contains('clock') ? clock.format(d) : fmt.format(d);
        t.dataset.local = '1';
    }
    document.body.dataset.times = 'local';
})();
