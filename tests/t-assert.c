/* SPDX-License-Identifier: MIT */
/*
 * KTS_ASSERT (src/util/kts_assert.h):
 *   1. a true assertion does nothing, whether assertions are on or off;
 *   2. with --enable-asserts (KTS_ENABLE_ASSERTS), a false one logs "assertion failed:
 *      FILE:LINE: FUNC: EXPR" through kts_log() and aborts (SIGABRT), in a child process here;
 *   3. without it, the expression is not evaluated and a false one does not abort.
 * ./run-tests runs this file in both kinds of build (plain, and the sanitizer and valgrind
 * phases).
 */
#include "kts_assert.h"
#include "kts_log.h"
#include "tap.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int evaluated;

static int count_evaluation(int v)
{
    evaluated++;
    return v;
}

static int pipe_fd = -1;

/* The assertion that fails: its line is FALSE_ASSERTION_LINE (keep the three lines together). */
enum { FALSE_ASSERTION_LINE = __LINE__ + 3 };
static void false_assertion(int two)
{
    KTS_ASSERT(two == 2);
}

static void to_pipe(int level, const char *msg, void *opaque)
{
    (void)opaque;
    char line[512];
    int n = snprintf(line, sizeof(line), "%d %s\n", level, msg);
    if (n > 0 && write(pipe_fd, line, (size_t)n) < 0)
        _exit(3);
}

/* Runs a false assertion in a child: its wait status, and what it logged into `log`. */
static int false_assertion_in_child(char *log, size_t size)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        pipe_fd = fds[1];
        kts_log_set_sink(to_pipe, NULL);
        false_assertion(1);
        _exit(0);
    }
    close(fds[1]);
    size_t got = 0;
    ssize_t r;
    while (got + 1 < size && (r = read(fds[0], log + got, size - 1 - got)) > 0)
        got += (size_t)r;
    log[got] = '\0';
    close(fds[0]);
    int status = 0;
    if (waitpid(pid, &status, 0) != pid)
        return -1;
    return status;
}

int main(void)
{
    plan(3);

    evaluated = 0;
    KTS_ASSERT(count_evaluation(1) == 1);
#ifdef KTS_ENABLE_ASSERTS
    is_int(evaluated, 1, "1. a true assertion passes (assertions on: evaluated once)");
#else
    is_int(evaluated, 0, "1. a true assertion passes (assertions off: not evaluated)");
#endif

    char log[1024];
    int status = false_assertion_in_child(log, sizeof(log));
#ifdef KTS_ENABLE_ASSERTS
    ok(status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
       "2. a false assertion aborts (wait status %d)", status);
    char want[256];
    snprintf(want, sizeof(want), "%d assertion failed: %s:%d: false_assertion: two == 2\n",
             KTS_LOG_ERR, __FILE__, FALSE_ASSERTION_LINE);
    is_str(log, want, "2. ... after logging file:line, function and expression at KTS_LOG_ERR");
#else
    ok(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
       "3. assertions off: a false assertion does not abort (wait status %d)", status);
    is_str(log, "", "3. ... and logs nothing");
#endif
    return done_testing();
}
