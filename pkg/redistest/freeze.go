package redistest

import "syscall"

// Freeze stops the server process (SIGSTOP), as a long pause or a hung host
// would: it keeps its connections and accepts new ones, and answers
// nothing until Thaw.
func (s *Server) Freeze() { s.sendSignal(syscall.SIGSTOP) }

// Thaw resumes a frozen server (SIGCONT).
func (s *Server) Thaw() { s.sendSignal(syscall.SIGCONT) }

func (s *Server) sendSignal(sig syscall.Signal) {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p != nil {
		_ = p.cmd.Process.Signal(sig)
	}
}
