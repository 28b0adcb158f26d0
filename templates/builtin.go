package templates

import "github.com/heraldhq/herald/notify"

// spec is the text of one event type in one locale. Channels take what fits them:
// SMS and push bodies the Short text, email and in-app the Body, WeChat its data map.
type spec struct {
	Title  string
	Short  string
	Body   string
	WeChat map[string]string
}

// builtin holds the templates by locale and event type (text/template syntax).
var builtin = map[string]map[string]spec{
	"zh-CN": {
		notify.TypeTransactionPosted: {
			Title: "账户{{.DirectionText}}提醒",
			Short: "【{{.Bank}}】您尾号{{.AccountTail}}的账户于{{.Time}}{{.DirectionText}}{{.Amount}}{{with .Counterparty}}，对方：{{.}}{{end}}，余额{{.Balance}}。",
			Body: "尊敬的客户：\n\n您尾号{{.AccountTail}}的账户于{{.Time}}{{.DirectionText}}{{.Amount}}。\n" +
				"{{with .Counterparty}}交易对方：{{.}}\n{{end}}{{with .Merchant}}商户：{{.}}\n{{end}}当前余额：{{.Balance}}\n\n如非本人操作，请立即致电客服。",
			WeChat: map[string]string{"first": "您的账户有一笔{{.DirectionText}}", "keyword1": "{{.Account}}", "keyword2": "{{.Time}}",
				"keyword3": "{{.Amount}}", "keyword4": "{{.Balance}}", "remark": "如非本人操作，请立即致电客服。"},
		},
		notify.TypeTransactionDeclined: {
			Title: "交易被拒绝",
			Short: "【{{.Bank}}】您尾号{{.AccountTail}}的账户于{{.Time}}一笔{{.Amount}}的交易被拒绝{{with .Reason}}（{{.}}）{{end}}。",
			Body: "尊敬的客户：\n\n您尾号{{.AccountTail}}的账户于{{.Time}}有一笔{{.Amount}}的交易被拒绝。\n" +
				"{{with .Merchant}}商户：{{.}}\n{{end}}{{with .Reason}}原因：{{.}}\n{{end}}\n如有疑问，请致电客服。",
			WeChat: map[string]string{"first": "您有一笔交易被拒绝", "keyword1": "{{.Account}}", "keyword2": "{{.Time}}",
				"keyword3": "{{.Amount}}", "remark": "{{with .Reason}}原因：{{.}}{{end}}"},
		},
		notify.TypeBalanceLow: {
			Title: "余额不足提醒",
			Short: "【{{.Bank}}】您尾号{{.AccountTail}}的账户余额为{{.Balance}}，已低于提醒金额，请及时存入。",
			Body:  "尊敬的客户：\n\n截至{{.Time}}，您尾号{{.AccountTail}}的账户余额为{{.Balance}}，已低于您设置的提醒金额。",
			WeChat: map[string]string{"first": "您的账户余额不足", "keyword1": "{{.Account}}", "keyword2": "{{.Balance}}",
				"keyword3": "{{.Time}}", "remark": "请及时存入。"},
		},
		notify.TypeOTPRequested: {
			Title: "验证码",
			Short: "【{{.Bank}}】验证码{{.Code}}，{{.TTLMinutes}}分钟内有效。请勿泄露给他人，银行工作人员不会索取验证码。",
			Body:  "您的验证码是 {{.Code}}，{{.TTLMinutes}}分钟内有效。请勿泄露给他人。",
			WeChat: map[string]string{"first": "您的验证码", "keyword1": "{{.Code}}", "keyword2": "{{.TTLMinutes}}分钟",
				"remark": "请勿泄露给他人。"},
		},
		notify.TypeSecurityLogin: {
			Title: "登录提醒",
			Short: "【{{.Bank}}】您的账号于{{.Time}}在{{with .Device}}{{.}}{{else}}新设备{{end}}登录{{with .IP}}（IP {{.}}）{{end}}。如非本人操作，请立即修改密码。",
			Body:  "尊敬的客户：\n\n您的账号于{{.Time}}登录。\n{{with .Device}}设备：{{.}}\n{{end}}{{with .IP}}IP：{{.}}\n{{end}}\n如非本人操作，请立即修改密码并致电客服。",
			WeChat: map[string]string{"first": "您的账号有新的登录", "keyword1": "{{.Time}}", "keyword2": "{{.Device}}",
				"keyword3": "{{.IP}}", "remark": "如非本人操作，请立即修改密码。"},
		},
	},
	"en": {
		notify.TypeTransactionPosted: {
			Title: "Account {{.DirectionText}}",
			Short: "{{.Bank}}: account {{.Account}} {{.DirectionText}} {{.Amount}} on {{.Time}}{{with .Counterparty}} ({{.}}){{end}}. Balance {{.Balance}}.",
			Body: "Dear customer,\n\nYour account {{.Account}} was {{.DirectionText}} {{.Amount}} on {{.Time}}.\n" +
				"{{with .Counterparty}}Counterparty: {{.}}\n{{end}}{{with .Merchant}}Merchant: {{.}}\n{{end}}Balance: {{.Balance}}\n\nIf this was not you, call us now.",
			WeChat: map[string]string{"first": "Your account was {{.DirectionText}}", "keyword1": "{{.Account}}", "keyword2": "{{.Time}}",
				"keyword3": "{{.Amount}}", "keyword4": "{{.Balance}}", "remark": "If this was not you, call us now."},
		},
		notify.TypeTransactionDeclined: {
			Title: "Transaction declined",
			Short: "{{.Bank}}: a {{.Amount}} transaction on account {{.Account}} was declined on {{.Time}}{{with .Reason}} ({{.}}){{end}}.",
			Body: "Dear customer,\n\nA transaction of {{.Amount}} on your account {{.Account}} was declined on {{.Time}}.\n" +
				"{{with .Merchant}}Merchant: {{.}}\n{{end}}{{with .Reason}}Reason: {{.}}\n{{end}}\nQuestions? Call us.",
			WeChat: map[string]string{"first": "A transaction was declined", "keyword1": "{{.Account}}", "keyword2": "{{.Time}}",
				"keyword3": "{{.Amount}}", "remark": "{{with .Reason}}Reason: {{.}}{{end}}"},
		},
		notify.TypeBalanceLow: {
			Title: "Low balance",
			Short: "{{.Bank}}: the balance of account {{.Account}} is {{.Balance}}, below your alert level.",
			Body:  "Dear customer,\n\nAs of {{.Time}}, the balance of your account {{.Account}} is {{.Balance}}, below the alert level you set.",
			WeChat: map[string]string{"first": "Low balance", "keyword1": "{{.Account}}", "keyword2": "{{.Balance}}",
				"keyword3": "{{.Time}}", "remark": "Please top up your account."},
		},
		notify.TypeOTPRequested: {
			Title: "Verification code",
			Short: "{{.Bank}}: your verification code is {{.Code}}, valid for {{.TTLMinutes}} minutes. Never share it; we will never ask for it.",
			Body:  "Your verification code is {{.Code}}, valid for {{.TTLMinutes}} minutes. Never share it.",
			WeChat: map[string]string{"first": "Your verification code", "keyword1": "{{.Code}}", "keyword2": "{{.TTLMinutes}} minutes",
				"remark": "Never share it."},
		},
		notify.TypeSecurityLogin: {
			Title: "New sign-in",
			Short: "{{.Bank}}: new sign-in on {{.Time}}{{with .Device}} from {{.}}{{end}}{{with .IP}} (IP {{.}}){{end}}. Not you? Change your password now.",
			Body:  "Dear customer,\n\nYour account was signed in on {{.Time}}.\n{{with .Device}}Device: {{.}}\n{{end}}{{with .IP}}IP: {{.}}\n{{end}}\nNot you? Change your password and call us now.",
			WeChat: map[string]string{"first": "New sign-in", "keyword1": "{{.Time}}", "keyword2": "{{.Device}}",
				"keyword3": "{{.IP}}", "remark": "Not you? Change your password now."},
		},
	},
}
