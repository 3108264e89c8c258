package httpapi

import (
	"encoding/json"
	"net/http"
)

// WriteJSON writes v as the JSON body of a response with status code.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteError writes {"error": reason} with status code.
func WriteError(w http.ResponseWriter, code int, reason string) {
	WriteJSON(w, code, map[string]string{"error": reason})
}
