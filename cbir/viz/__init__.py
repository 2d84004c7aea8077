"""Pictures of results from plain arrays and strings: the HTML results page (page) and images (sheets).

Nothing here reads files or an index: the faces (cli, web) gather thumbnails and colour make-ups and pass them in.
"""
