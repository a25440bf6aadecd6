// The console's only script: copy buttons, and reading an uploaded metadata file into the form.
// Everything works without it, except that values are then copied by hand.
document.addEventListener("click", (event) => {
  const button = event.target.closest("button.copy");
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source || !navigator.clipboard) return;
  navigator.clipboard.writeText(source.textContent.trim()).then(() => {
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 1500);
  });
});

document.addEventListener("change", (event) => {
  const input = event.target;
  if (!input.matches("input[type=file][data-fills]") || !input.files.length) return;
  const target = document.getElementById(input.dataset.fills);
  input.files[0].text().then((text) => {
    target.value = text;
    const xml = document.querySelector("input[name=via][value=xml]");
    if (xml) xml.checked = true;
  });
});
