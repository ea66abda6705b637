"""Definitions as code: the config directory's files, validated with file:line errors."""
