"""The REST API and the public dashboard (Flask). Serve with `campus-energy api` or
`gunicorn "campus_energy.api:create_app()"`.

`app` builds the Flask app (hooks, error handling), `views` holds the endpoints and
`billing_views` those of costs, demand, bills and the campus model, `alert_views` the
book of alerts (and its acknowledgements and silences, with a token), `queries` the pure
sums and answers, `costs` and `campus_model` the billing answers, `cache` the response
cache, `state` what the views read through, `sites` what a request sees of an estate of
sites (`site=`, `api.site`), `zoned` a site's days from a store cut in another zone, and
`watched` the source that logs its outages once.
"""

from campus_energy.api.app import create_app

__all__ = ["create_app"]
