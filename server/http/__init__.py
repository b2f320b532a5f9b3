"""REST: the auth endpoints, health and readiness, metrics, the API documents, the playground and the admin view."""
