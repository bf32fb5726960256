"""Reports: a period's energy, cost, CO2, peak demand, after-hours use, coverage and alerts per
building, as HTML (charts inline), XLSX and CSV, made by hand (`campus-energy report`) or
mailed on a schedule (`[[reports]]`)."""
