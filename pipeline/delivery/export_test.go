package delivery

// HeaderText is headerText, for tests that check a header's round trip.
var HeaderText = headerText
