"""The HTTP adapter: FastAPI routers over the services."""
