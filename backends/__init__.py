"""One adapter per system over its real client library, and the models they return."""
