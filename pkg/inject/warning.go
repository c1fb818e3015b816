package inject

// WarningCode names a kind of warning of the core with a stable kebab-case
// string. Whatever reads warnings by machine (the webhook's metrics and
// Events) reads the code; the message is for people and may change.
type WarningCode string

// The codes of the core's warnings.
const (
	// WarnInvalidSetting: a podgrace setting is invalid, unknown or at a
	// level that does not read it (a policy.Problem); in strict mode the pod
	// is denied instead.
	WarnInvalidSetting WarningCode = "invalid-setting"
	// WarnStatusReplaced: the status annotation is not podgrace's JSON.
	WarnStatusReplaced WarningCode = "status-replaced"
	// WarnDrainIgnored: a mesh's drain annotation could not be read.
	WarnDrainIgnored WarningCode = "drain-ignored"
	// WarnNoSleep: the grace period leaves no room for a preStop sleep.
	WarnNoSleep WarningCode = "no-prestop-sleep"
	// WarnSleepShortened: a sleep was shortened to fit the grace period.
	WarnSleepShortened WarningCode = "prestop-sleep-shortened"
	// WarnDrainShortened: a native sidecar that arrived on reinvocation
	// gets less than its drain.
	WarnDrainShortened WarningCode = "drain-shortened"
	// WarnImageUnreadable: the image config the rewrite needs is unreadable.
	WarnImageUnreadable WarningCode = "image-config-unreadable"
	// WarnShellFormKept: a shell-form command the rewrite cannot handle.
	WarnShellFormKept WarningCode = "shell-form-kept"
)

// WarningCodes lists every code of the core, for tests and docs.
var WarningCodes = []WarningCode{
	WarnInvalidSetting, WarnStatusReplaced, WarnDrainIgnored, WarnNoSleep,
	WarnSleepShortened, WarnDrainShortened, WarnImageUnreadable, WarnShellFormKept,
}

// Warning is one warning of the core: a stable code and the admission
// warning's text, which starts with "podgrace:" and is at most
// MaxWarningLen bytes.
type Warning struct {
	Code    WarningCode
	Message string
}

// Messages is the text of each warning, in order: what the API server
// shows the user.
func Messages(ws []Warning) []string {
	if ws == nil {
		return nil
	}
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.Message
	}
	return out
}
