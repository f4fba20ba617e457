"""``tunesmith ui``: a local web app for the whole loop (data, preview, train, runs, compare, chat).

Server-rendered pages (FastAPI + Jinja2) with htmx and uPlot vendored under ``static/vendor``; training,
resuming and evaluating run as their own processes, so the UI can be closed while they go on.
"""
