package templates

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestFilters(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 3, 1, 23, 30, 0, 0, time.UTC)
	tests := []struct {
		name, src, want string
	}{
		{"money EUR", `{{ 1999 | money: "EUR" }}`, "€19.99"},
		{"money USD", `{{ 1999 | money: "USD" }}`, "$19.99"},
		{"money JPY has no minor unit", `{{ 1999 | money: "JPY" }}`, "¥1,999"},
		{"money KWD has three digits", `{{ 1999 | money: "KWD" }}`, "KWD\u00a01.999"},
		{"money CLP has none", `{{ 1999 | money: "CLP" }}`, "CLP\u00a01,999"},
		{"money ISK has none", `{{ 1999 | money: "ISK" }}`, "ISK\u00a01,999"},
		{"money lower-case code", `{{ 5 | money: "gbp" }}`, "£0.05"},
		{"money negative", `{{ -250 | money: "EUR" }}`, "-€2.50"},
		{"money unknown currency", `{{ 1234 | money: "XYZ" }}`, "XYZ\u00a012.34"},
		{"money from content", `{{ customer.price | money: customer.currency }}`, "€49.00"},
		{"money with an explicit locale", `{{ 1999 | money: "EUR", "de" }}`, "19,99\u00a0€"},
		{"date in UTC", `{{ now | date: "%Y-%m-%d %H:%M" }}`, "2025-03-01 23:30"},
		{"date in a time zone", `{{ now | date: "%Y-%m-%d %H:%M", "Europe/Paris" }}`, "2025-03-02 00:30"},
		{"date with default format", `{{ now | date }}`, "Sat, Mar 01, 25"},
		{"default", `{{ customer.missing | default: "friend" }}`, "friend"},
		{"capitalize", `{{ "ada lovelace" | capitalize }}`, "Ada lovelace"},
		{"truncate", `{{ "A very long product name" | truncate: 10 }}`, "A very ..."},
		{"url_encode", `{{ "a b&c/é" | url_encode }}`, "a+b%26c%2F%C3%A9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tpl := mustFromFiles(t, map[string]string{
				FileManifest: "name: f\nversion: 1\n",
				FileSubject:  tt.src,
				FileHTML:     "h",
				FileText:     "t",
			})
			m, err := NewRenderer(RendererConfig{}).Render(context.Background(), tpl, RenderData{
				Customer: map[string]any{"price": 4900.0, "currency": "EUR"},
				Now:      now,
			})
			require.NoError(t, err)
			require.Equal(t, tt.want, m.Subject)
		})
	}
}

func TestFilters_DateRejectsUnknownZone(t *testing.T) {
	t.Parallel()
	tpl := mustFromFiles(t, map[string]string{
		FileManifest: "name: f\nversion: 1\n",
		FileSubject:  `{{ now | date: "%Y", "Mars/Olympus" }}`,
		FileHTML:     "h",
		FileText:     "t",
	})
	_, err := NewRenderer(RendererConfig{}).Render(context.Background(), tpl, RenderData{})
	require.ErrorContains(t, err, "render template f: subject:1: ")
	require.ErrorContains(t, err, "Mars/Olympus")
}

func TestFormatDate_MemoKeysOnTimeFormatAndZone(t *testing.T) {
	t.Parallel()
	t1 := time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)
	t2 := t1.Add(26 * time.Hour)
	for range 2 { // the second round is served from the memo
		for _, tc := range []struct {
			t            time.Time
			format, zone string
			want         string
		}{
			{t1, "%Y-%m-%d %H:%M", "", "2025-03-01 09:00"},
			{t2, "%Y-%m-%d %H:%M", "", "2025-03-02 11:00"},
			{t1, "%Y-%m-%d %H:%M", "Asia/Tokyo", "2025-03-01 18:00"},
			{t1, "%H:%M", "", "09:00"},
			{t1.In(time.FixedZone("X", 3600)), "%Y-%m-%d %H:%M", "", "2025-03-01 10:00"},
		} {
			got, err := formatDate(tc.t, tc.format, tc.zone)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		}
	}
	_, err := formatDate(t1, "%Y", "Mars/Olympus")
	require.ErrorContains(t, err, "unknown time zone")
}
