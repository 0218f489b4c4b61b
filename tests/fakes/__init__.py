"""Builders of fake releases for the paper-structure test: each writes files in the exact layout a
researcher unpacks (datasets) or downloads (the hub's DiT folder, ImageNet backbone weights), at a
size CI can afford. One module per concern: persons, faces, models."""
