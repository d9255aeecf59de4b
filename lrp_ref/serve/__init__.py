"""``lrp-ref serve``: a local web page to draw a digit and watch LRP explain it.

* :mod:`lrp_ref.serve.api`: the JSON API without HTTP (checks a request, explains it, describes the result);
* :mod:`lrp_ref.serve.server`: the HTTP server (standard library ``ThreadingHTTPServer``) and its routes;
* ``static/``: the page (index.html, app.js, style.css), shipped inside the package; no CDN, works offline.

Like the rest of :mod:`lrp_ref`, it needs numpy, scipy and h5py only.
"""

from __future__ import annotations

from .api import RULES, Demo, RequestError
from .server import MAX_BODY, DemoServer, make_server

__all__ = ["MAX_BODY", "RULES", "Demo", "DemoServer", "RequestError", "make_server"]
