"""The archive as people browse it: `index.html` at its root, its shard files (`browse/`) and
the playlists (`playlists/`, `playlist.m3u8`).

`view` turns a manifest into a row, `store` keeps the rows in the state (each in a shard for
good, and which shards changed), `render` turns a shard's rows into its files, `indexer`
keeps the files current in storage, writing only the shards that changed.
"""
