"""The alerts service (`campus-energy alerts`): rules evaluated over the live readings and the
window store, alert states kept in the book (`incidents`), notifications delivered from its
outbox, and the scheduled reports mailed."""
