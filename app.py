"""Vigil's Chalice app: wiring only (see chalicelib/ for everything else)."""

from __future__ import annotations

from chalice import Chalice

from chalicelib.api.routes import routers
from chalicelib.wiring import configure, event_blueprints, not_found

settings = configure()
app = Chalice(app_name="vigil")
app.api.binary_types = []  # every response is text (JSON, HTML, SVG, Atom)

for router in routers(settings):
    app.register_blueprint(router.blueprint)
app.register_blueprint(not_found())
for blueprint in event_blueprints():
    app.register_blueprint(blueprint)
