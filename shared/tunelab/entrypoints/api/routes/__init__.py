"""One module per resource, each exposing `router` (a Powertools `Router`); `app.py` includes them.

To add a resource: create `routes/<resource>.py` with `router = Router()`, declare routes with full
paths (`/v1/...`), annotated request bodies and return types (they feed validation and OpenAPI),
`responses=ERRORS` and `tags=[...]`, and add the module to `ROUTERS` in `app.py`.
"""
