// The few interactions plain HTML cannot do: dropping a file, taking palette colours, painting the layout grid.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const upload = document.getElementById("upload");
  if (upload) {
    const input = document.getElementById("image");
    ["dragenter", "dragover"].forEach((e) => upload.addEventListener(e, (ev) => { ev.preventDefault(); upload.classList.add("over"); }));
    upload.addEventListener("dragleave", () => upload.classList.remove("over"));
    upload.addEventListener("drop", (ev) => {
      ev.preventDefault();
      upload.classList.remove("over");
      if (ev.dataTransfer.files.length) { input.files = ev.dataTransfer.files; upload.submit(); }
    });
  }

  const colourForm = document.getElementById("colour-form");
  if (colourForm) {
    document.querySelectorAll(".palette .pick").forEach((b) => b.addEventListener("click", () => {
      const rows = [...colourForm.querySelectorAll("tbody tr")];
      const row = rows.find((r) => !r.querySelector("[name=share]").value) || rows[rows.length - 1];
      row.querySelector("[name=pick]").value = b.dataset.hex;
      const share = row.querySelector("[name=share]");
      if (!share.value) share.value = "20";
    }));
  }

  const layoutForm = document.getElementById("layout-form");
  if (layoutForm) {
    const brush = document.getElementById("brush");
    const field = document.getElementById("layout");
    const cells = [...layoutForm.querySelectorAll(".cell")];
    const painted = cells.map(() => "");
    let erasing = false;
    const show = (i) => {
      const rect = cells[i].querySelector("rect");
      rect.setAttribute("fill", painted[i] || "#ffffff");
      rect.setAttribute("fill-opacity", painted[i] ? "1" : "0");
    };
    const paint = (i) => { painted[i] = erasing ? "" : brush.value; show(i); field.value = painted.join(","); };
    let down = false;
    cells.forEach((c, i) => {
      c.addEventListener("pointerdown", (ev) => { ev.preventDefault(); down = true; paint(i); });
      c.addEventListener("pointerenter", () => { if (down) paint(i); });
      c.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); paint(i); } });
    });
    document.addEventListener("pointerup", () => { down = false; });
    brush.addEventListener("input", () => { erasing = false; });
    document.getElementById("eraser").addEventListener("click", () => { erasing = true; });
    document.getElementById("clear").addEventListener("click", () => { painted.fill(""); cells.forEach((_, i) => show(i)); field.value = painted.join(","); });
    layoutForm.querySelectorAll(".palette .pick").forEach((b) => b.addEventListener("click", () => { brush.value = b.dataset.hex; erasing = false; }));
  }
});
