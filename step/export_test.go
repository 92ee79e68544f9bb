package step

// RendersKept is the number of renders r keeps (Runner.Render's cache), for the tests.
func RendersKept(r *Runner) int {
	r.renders.mu.Lock()
	defer r.renders.mu.Unlock()
	return len(r.renders.byKey)
}
