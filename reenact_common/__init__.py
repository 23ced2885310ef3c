"""The bottom layer every package may import: the error hierarchy, asset paths and media I/O.

Why a package of its own: `models`, `export`, `training` and `reenact_app` all raise the same errors, find
the same bundled assets and read the same videos; putting these here keeps every import arrow pointing
down (see docs/architecture.md). It imports nothing else of the project.
"""
