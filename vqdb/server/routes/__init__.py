"""The routers the app mounts, listed in one place.

Each entry is a module exposing ``router`` (a ``fastapi.APIRouter``). ``OPTIONAL`` routers are
mounted when their module imports (an extension such as ``vqdb.rag`` adds its line here); a
missing optional dependency only logs a warning.
"""

CORE = [
    "vqdb.server.routes.health",
    "vqdb.server.routes.collections",
    "vqdb.server.routes.points",
    "vqdb.server.routes.search",
    "vqdb.server.routes.snapshots",
    "vqdb.server.qdrant",  # the Qdrant-compatible subset under /qdrant
]

OPTIONAL: list[str] = [
    "vqdb.server.routes_text",  # text collections (vqdb.rag): documents in, questions in words
]
