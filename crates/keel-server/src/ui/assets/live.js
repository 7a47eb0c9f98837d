// Keel's dashboard: a live page's changing part (#live), kept current over
// one Server-Sent Events stream per page. The server sends the part again
// when it changes; nothing else runs in the page.
"use strict";
const live = document.getElementById("live");
if (live && live.dataset.stream) {
  const url = new URL(live.dataset.stream, location.href);
  url.searchParams.set("v", live.dataset.version);
  const source = new EventSource(url);
  source.addEventListener("live", (event) => {
    live.innerHTML = event.data;
  });
  addEventListener("pagehide", () => source.close());
}
