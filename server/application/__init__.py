"""The application layer in this process: the use cases (services/) built on the node's resources, and their background work."""
