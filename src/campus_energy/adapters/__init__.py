"""One module per external system; each turns its library's failures into `campus_energy.errors`."""
