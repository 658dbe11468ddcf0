// Copy buttons: <button data-copy="text">. Everything else works without JavaScript.
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  navigator.clipboard.writeText(button.dataset.copy).then(() => {
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 1200);
  });
});

// The call page's recording: a transcript row or a point on the waveform plays from there.
document.addEventListener("click", (event) => {
  const audio = document.getElementById("recording");
  if (!audio) return;
  const wave = event.target.closest("#waveform");
  let at = null;
  if (wave) {
    const box = wave.getBoundingClientRect();
    const scale = wave.viewBox.baseVal.width / box.width;
    const x = (event.clientX - box.left) * scale;
    at = (x - Number(wave.dataset.left)) / Number(wave.dataset.pxPerSecond);
  } else {
    const row = event.target.closest("tr[data-at]");
    if (!row || event.target.closest("a, button, summary")) return;
    at = Number(row.dataset.at);
  }
  if (!Number.isFinite(at) || at < 0) return;
  audio.currentTime = at;
  audio.play();
});

// Charts: the point under the pointer (or focused) is read out beside the chart; without
// JavaScript each point's title still shows as the browser's tooltip.
const readOut = (event) => {
  const point = event.target.closest && event.target.closest("figure.chart .point");
  if (!point) return;
  const out = point.closest("figure.chart").querySelector(".readout");
  if (out) out.textContent = point.querySelector("title").textContent;
};
document.addEventListener("mouseover", readOut);
document.addEventListener("focusin", readOut);
