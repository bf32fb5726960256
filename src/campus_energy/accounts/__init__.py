"""Money, peaks and carbon of the campus: scopes, costs, bills and their exports.

What the API, the `bill` command and the Streamlit dashboard share: a scope (the
campus, a building, a meter, a virtual meter) resolved against the configuration,
its quarter-hour energies read through a `HoursOf` function (a window source's
`scope_hours`, or the logger store's), and `core.billing`, `core.demand` and
`core.emissions` applied to them. No tier is imported here.
"""
