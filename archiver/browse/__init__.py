"""The archive as people browse it: `index.html` and `playlist.m3u8` at its root.

`view` turns a manifest into a row (kept in the state), `render` turns rows into the two
files, `indexer` keeps them current in storage.
"""
