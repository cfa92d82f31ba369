"""Migrations on disk: the model, statement splitting and a loader per folder format."""
