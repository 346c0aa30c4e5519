// The API docs page: Swagger UI on /api/openapi.json. A file of its own (not an inline
// script), so the page runs under a `script-src 'self'` Content-Security-Policy.
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.specUrl,
    domNode: root,
    deepLinking: true,
    validatorUrl: null,  // no badge: it would send the document to a validator on the internet
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
})();
