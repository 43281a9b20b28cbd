//! The OCI spec of a container, built from its image's config and a Docker create request.
