/*
 * The pod sandbox's process: holds the pod's namespaces open, does nothing else.
 *
 * It is PID 1 of the pod's PID namespace when the pod shares one, so it reaps the zombies that
 * orphaned children of other containers leave behind. SIGTERM and SIGINT end it with status 0 (the
 * runtime stops a sandbox with SIGTERM); every other signal keeps its default action, as in
 * Kubernetes' own pause. `pause -v` prints the version.
 *
 * Built static (cc -static -Os) by ci/cluster/build-addons.sh, so the image is this file alone.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef VERSION
#define VERSION "unknown"
#endif

static void stop(int signo)
{
	static const char msg[] = "pause: shutting down\n";

	(void)signo;
	/* write(2) and _exit(2) are async-signal-safe; printf and exit are not. */
	(void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
	_exit(0);
}

static void reap(int signo)
{
	int saved = errno;

	(void)signo;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	errno = saved;
}

static int on(int signo, void (*handler)(int))
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sigemptyset(&sa.sa_mask);
	/* SA_NOCLDSTOP: a stopped child is not a zombie; only exits need reaping. */
	sa.sa_flags = SA_RESTART | (signo == SIGCHLD ? SA_NOCLDSTOP : 0);
	return sigaction(signo, &sa, NULL);
}

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "-v") == 0) {
		printf("pause.c %s (tfstack)\n", VERSION);
		return 0;
	}
	if (argc != 1) {
		fprintf(stderr, "usage: %s [-v]\n", argv[0]);
		return 2;
	}
	if (getpid() != 1)
		fprintf(stderr, "pause: warning: not PID 1, zombies of others are not mine to reap\n");

	if (on(SIGINT, stop) < 0 || on(SIGTERM, stop) < 0 || on(SIGCHLD, reap) < 0) {
		perror("pause: sigaction");
		return 1;
	}
	for (;;)
		pause();
}
