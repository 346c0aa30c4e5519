// The new-run form: a live count of characters beside each field with a limit (the server checks
// the same limit, and says so in words beside the field if it is passed).
(function () {
  "use strict";
  document.querySelectorAll("[data-counter]").forEach(function (field) {
    var counter = document.getElementById(field.getAttribute("data-counter"));
    var max = parseInt(field.getAttribute("maxlength"), 10);
    if (!counter || !max) return;
    function update() {
      var n = field.value.length;
      counter.textContent = n.toLocaleString("en-US") + " / " + max.toLocaleString("en-US");
      counter.classList.toggle("near", n >= max * 0.9);
    }
    field.addEventListener("input", update);
    update();
  });
  var first = document.querySelector("#new-run [aria-invalid=true]");
  if (first) first.focus();
})();
