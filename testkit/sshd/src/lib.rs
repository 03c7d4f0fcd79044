//! k3splan test harness: real OpenSSH sshd hosts with their own address and filesystem view.
