"""Group `analysis`: listing, file map, frames and modelling table, and the change sensor.
Loaded as a dg defs folder."""
