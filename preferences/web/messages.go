package web

import (
	"strings"

	"golang.org/x/text/language"
)

// languages the page speaks; the first is the fallback.
var languages = []language.Tag{language.English, language.German, language.French}

var matcher = language.NewMatcher(languages)

// locale picks the page's language: the customer's locale (customers.locale) when set, else the
// browser's Accept-Language, else English.
func locale(customerLocale, acceptLanguage string) string {
	var prefs []language.Tag
	if t, err := language.Parse(customerLocale); err == nil && customerLocale != "" {
		prefs = append(prefs, t)
	} else if tags, _, err := language.ParseAcceptLanguage(acceptLanguage); err == nil {
		prefs = tags
	}
	_, i, _ := matcher.Match(prefs...)
	base, _ := languages[i].Base()
	return base.String()
}

// text is one language's strings; {email} and {topic} are filled in before escaping.
type text map[string]string

var texts = map[string]text{
	"en": {
		"title":              "Email preferences",
		"intro":              "Choose which emails {email} receives from us.",
		"topics_legend":      "Topics",
		"no_topics":          "There are no topics to choose from.",
		"pending":            "awaiting your confirmation",
		"consent_legend":     "Your consent",
		"consent_label":      "I agree to receive marketing email from us",
		"consent_hint":       "Newsletters and offers on the topics you tick. Without it you get none of them; you can withdraw it here at any time.",
		"all_legend":         "All marketing email",
		"all_label":          "Unsubscribe from all marketing email",
		"all_hint":           "Overrides the topics above. Service messages about your account still arrive.",
		"save":               "Save preferences",
		"saved":              "Your preferences have been saved.",
		"confirm_topic":      "Unsubscribe from “{topic}”?",
		"confirm_all":        "Unsubscribe from all marketing email?",
		"unsubscribe":        "Unsubscribe",
		"or_choose":          "Or choose below what you would like to receive.",
		"unsubscribed_topic": "You have been unsubscribed from “{topic}”.",
		"unsubscribed_all":   "You have been unsubscribed from all marketing email.",
		"blocked":            "We no longer send email to this address because messages to it could not be delivered or were reported as unwanted.",
		"invalid_title":      "This link is not valid",
		"invalid_body":       "The link may be incomplete or was changed. Please use the link in your most recent email from us.",
		"expired_title":      "This link has expired",
		"expired_body":       "Preference links work for a limited time, for your security. Please use the link in a more recent email from us.",
		"unknown_title":      "No preferences found",
		"unknown_body":       "We no longer hold any data for this link.",
		"error_title":        "Something went wrong",
		"error_body":         "Your preferences could not be loaded or saved. Please try again in a few minutes.",
		"form_title":         "The form could not be sent",
		"form_body":          "Please reload the page from the link in your email and try again.",
	},
	"de": {
		"title":              "E-Mail-Einstellungen",
		"intro":              "Wählen Sie, welche E-Mails {email} von uns erhält.",
		"topics_legend":      "Themen",
		"no_topics":          "Es gibt keine Themen zur Auswahl.",
		"pending":            "wartet auf Ihre Bestätigung",
		"consent_legend":     "Ihre Einwilligung",
		"consent_label":      "Ich willige ein, Marketing-E-Mails von Ihnen zu erhalten",
		"consent_hint":       "Newsletter und Angebote zu den gewählten Themen. Ohne Einwilligung erhalten Sie keine davon; Sie können sie hier jederzeit widerrufen.",
		"all_legend":         "Alle Marketing-E-Mails",
		"all_label":          "Von allen Marketing-E-Mails abmelden",
		"all_hint":           "Gilt vor den Themen oben. Servicenachrichten zu Ihrem Konto erhalten Sie weiterhin.",
		"save":               "Einstellungen speichern",
		"saved":              "Ihre Einstellungen wurden gespeichert.",
		"confirm_topic":      "Von „{topic}“ abmelden?",
		"confirm_all":        "Von allen Marketing-E-Mails abmelden?",
		"unsubscribe":        "Abmelden",
		"or_choose":          "Oder wählen Sie unten, was Sie erhalten möchten.",
		"unsubscribed_topic": "Sie wurden von „{topic}“ abgemeldet.",
		"unsubscribed_all":   "Sie wurden von allen Marketing-E-Mails abgemeldet.",
		"blocked":            "Wir senden keine E-Mails mehr an diese Adresse, weil Nachrichten nicht zugestellt werden konnten oder als unerwünscht gemeldet wurden.",
		"invalid_title":      "Dieser Link ist ungültig",
		"invalid_body":       "Der Link ist vielleicht unvollständig oder wurde verändert. Bitte nutzen Sie den Link aus unserer neuesten E-Mail.",
		"expired_title":      "Dieser Link ist abgelaufen",
		"expired_body":       "Zu Ihrer Sicherheit gelten Einstellungs-Links nur eine begrenzte Zeit. Bitte nutzen Sie den Link aus einer neueren E-Mail.",
		"unknown_title":      "Keine Einstellungen gefunden",
		"unknown_body":       "Zu diesem Link speichern wir keine Daten mehr.",
		"error_title":        "Etwas ist schiefgegangen",
		"error_body":         "Ihre Einstellungen konnten nicht geladen oder gespeichert werden. Bitte versuchen Sie es in einigen Minuten erneut.",
		"form_title":         "Das Formular konnte nicht gesendet werden",
		"form_body":          "Bitte öffnen Sie die Seite erneut über den Link in Ihrer E-Mail und versuchen Sie es noch einmal.",
	},
	"fr": {
		"title":              "Préférences e-mail",
		"intro":              "Choisissez les e-mails que {email} reçoit de notre part.",
		"topics_legend":      "Sujets",
		"no_topics":          "Aucun sujet n’est proposé.",
		"pending":            "en attente de votre confirmation",
		"consent_legend":     "Votre consentement",
		"consent_label":      "J’accepte de recevoir vos e-mails marketing",
		"consent_hint":       "Lettres d’information et offres sur les thèmes cochés. Sans consentement, vous n’en recevez aucune ; vous pouvez le retirer ici à tout moment.",
		"all_legend":         "Tous les e-mails marketing",
		"all_label":          "Me désabonner de tous les e-mails marketing",
		"all_hint":           "Prime sur les sujets ci-dessus. Les messages de service concernant votre compte restent envoyés.",
		"save":               "Enregistrer les préférences",
		"saved":              "Vos préférences ont été enregistrées.",
		"confirm_topic":      "Se désabonner de « {topic} » ?",
		"confirm_all":        "Se désabonner de tous les e-mails marketing ?",
		"unsubscribe":        "Me désabonner",
		"or_choose":          "Ou choisissez ci-dessous ce que vous souhaitez recevoir.",
		"unsubscribed_topic": "Vous êtes désabonné de « {topic} ».",
		"unsubscribed_all":   "Vous êtes désabonné de tous les e-mails marketing.",
		"blocked":            "Nous n’envoyons plus d’e-mails à cette adresse, car des messages n’ont pas pu être distribués ou ont été signalés comme indésirables.",
		"invalid_title":      "Ce lien n’est pas valide",
		"invalid_body":       "Le lien est peut-être incomplet ou a été modifié. Utilisez le lien de notre e-mail le plus récent.",
		"expired_title":      "Ce lien a expiré",
		"expired_body":       "Pour votre sécurité, les liens de préférences ne fonctionnent qu’un temps limité. Utilisez le lien d’un e-mail plus récent.",
		"unknown_title":      "Aucune préférence trouvée",
		"unknown_body":       "Nous ne conservons plus de données pour ce lien.",
		"error_title":        "Une erreur s’est produite",
		"error_body":         "Vos préférences n’ont pas pu être chargées ou enregistrées. Réessayez dans quelques minutes.",
		"form_title":         "Le formulaire n’a pas pu être envoyé",
		"form_body":          "Rouvrez la page depuis le lien de votre e-mail et réessayez.",
	},
}

// T returns the string key in the language, with {email} and {topic} filled in.
func (t text) T(key string, fill ...string) string {
	s, ok := t[key]
	if !ok {
		s = texts["en"][key]
	}
	for i := 0; i+1 < len(fill); i += 2 {
		s = strings.ReplaceAll(s, "{"+fill[i]+"}", fill[i+1])
	}
	return s
}
