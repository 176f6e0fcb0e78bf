package redistest

import "syscall"

// Freeze stops the server process (SIGSTOP), as a long pause or a hung host
// would: it keeps its connections and accepts new ones, and answers
// nothing until Thaw.
func (s *Server) Freeze() { s.sendSignal(syscall.SIGSTOP) }

// Thaw resumes a frozen server (SIGCONT).
func (s *Server) Thaw() { s.sendSignal(syscall.SIGCONT) }

// PID is the process id of the running server, 0 while it is stopped.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.cmd.Process.Pid
}

func (s *Server) sendSignal(sig syscall.Signal) {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p != nil {
		_ = p.cmd.Process.Signal(sig)
	}
}
