// A one-time sign-in link is /login#link=TOKEN: the fragment never reaches the server.
// Move the token into the link form, show it, and drop the fragment from the address bar.
(function () {
  "use strict";
  var match = /(?:^#|&)link=([A-Za-z0-9_-]+)/.exec(window.location.hash);
  if (!match) { return; }
  document.getElementById("link").value = match[1];
  document.getElementById("link-form").hidden = false;
  history.replaceState(null, "", window.location.pathname);
})();
