// Package execformcases holds the exec-form rewrite's PID 1 table: the
// container commands pkg/execform's TestSignalDelivery runs under real
// shells as PID 1 before and after the rewrite, and that test/integration
// creates through the webhook and the generated admission policy. It
// imports nothing of pkg/execform, whose own tests use it.
package execformcases

// The execform.Kind values of the table (TestSignalDelivery compares them
// with Rewrite's).
const (
	kindDirect = "drop-shell"
	kindExec   = "exec"
)

func sh(script string) []string { return []string{"sh", "-c", script} }

// PID1 is a container command whose rewrite pkg/execform's
// TestSignalDelivery runs before and after, under real shells as PID 1.
type PID1 struct {
	Name          string
	Command, Args []string // pod text; the app is `sigapp`, found in PATH
	Env           map[string]string
	Kind          string   // the rewrite (an execform.Kind) it must get
	Shells        []string // the shells that run it; nil means all
	// OriginalDelivers lists the shells where the original command already
	// lets SIGTERM reach the app. Measured, not wished: a shell that starts
	// or stops exec'ing its last command by itself fails the test.
	OriginalDelivers []string
	// Started is the ready line the app must print, when the case is about
	// what the app is started with (args, $GREETING).
	Started string
}

// PID1Cases is the table: commands whose SIGTERM is lost while a shell is
// PID 1, and what the rewrite makes of them.
var PID1Cases = []PID1{
	{Name: "drop-shell", Command: sh("sigapp serve"), Kind: kindDirect,
		OriginalDelivers: []string{"bash", "busybox"}},
	{Name: "drop-shell/trailing newline", Command: sh("sigapp serve\n"), Kind: kindDirect,
		OriginalDelivers: []string{"bash"}},
	{Name: "drop-shell/comment and newlines", Command: sh("sigapp serve # web\n\n"), Kind: kindDirect},
	{Name: "drop-shell/nested sh -c", Command: sh(`sh -c 'sigapp serve'`), Kind: kindDirect},
	{Name: "exec after &&", Command: sh("cd / && sigapp serve"), Kind: kindExec,
		OriginalDelivers: []string{"bash", "busybox"}},
	{Name: "exec after ;", Command: sh("true; sigapp serve"), Kind: kindExec,
		OriginalDelivers: []string{"bash", "busybox"}},
	{Name: "exec after ||", Command: sh("false || sigapp serve"), Kind: kindExec,
		OriginalDelivers: []string{"bash", "busybox"}},
	{Name: "exec with VAR=x prefix", Command: sh("cd /; GREETING=hi sigapp serve"), Kind: kindExec,
		OriginalDelivers: []string{"bash", "busybox"}, Started: `args=["serve"] greeting="hi"`},
	{Name: "exec with redirection", Command: sh("sigapp serve >/dev/null 2>&1"), Kind: kindExec,
		OriginalDelivers: []string{"busybox"}},
	{Name: "exec after here-doc", Command: sh("cat >/dev/null <<EOF\nhello\nEOF\nsigapp serve"), Kind: kindExec,
		OriginalDelivers: []string{"bash", "busybox"}},
	{Name: "exec with -ec", Command: []string{"sh", "-ec", "cd /\nsigapp serve\n"}, Kind: kindExec,
		OriginalDelivers: []string{"bash"}},
	{Name: "exec before a script without #!", Command: sh("./noshebang serve"), Kind: kindExec,
		OriginalDelivers: []string{"bash", "busybox"}, Started: `args=["serve"] greeting=""`},
	{Name: "exec with -o pipefail -c (bash)", Command: []string{"bash", "-o", "pipefail", "-c", "true | true && sigapp serve"}, Kind: kindExec,
		Shells: []string{"bash"}, OriginalDelivers: []string{"bash"}},
	{Name: "exec in args with $0 words", Command: []string{"sh", "-c"}, Args: []string{`sigapp "$0" "$@"`, "zero", "one two"}, Kind: kindExec,
		OriginalDelivers: []string{"bash", "busybox"}, Started: `args=["zero" "one two"] greeting=""`},
	{Name: "exec with $$ escape", Command: sh("X=escaped; sigapp $$X"), Kind: kindExec,
		OriginalDelivers: []string{"bash", "busybox"}, Started: `args=["escaped"] greeting=""`},
	{Name: "exec with defined $(NAME)", Command: sh("cd $(APP_DIR) && GREETING=$(APP_GREETING) sigapp $(PORT)"), Kind: kindExec,
		Env:              map[string]string{"APP_DIR": "/tmp", "APP_GREETING": "hello", "PORT": "8080"},
		OriginalDelivers: []string{"bash", "busybox"}, Started: `args=["8080"] greeting="hello"`},
}
