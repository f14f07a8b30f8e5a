/* The sandbox process of every pod: it holds the pod's namespaces open and does nothing else.
 * As PID 1 of the pod it reaps orphans and leaves on SIGINT or SIGTERM. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void leave(int sig) {
	(void)sig;
	_exit(0);
}

static void reap(int sig) {
	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0) {
	}
}

int main(void) {
	struct sigaction on_stop = {.sa_handler = leave};
	struct sigaction on_child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
	if (sigaction(SIGINT, &on_stop, NULL) || sigaction(SIGTERM, &on_stop, NULL) ||
	    sigaction(SIGCHLD, &on_child, NULL)) {
		return 1;
	}
	for (;;) {
		pause();
	}
}
