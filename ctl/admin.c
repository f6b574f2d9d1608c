/* ai-relayctl admin: console users. */
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "crypto.h"
#include "ctl.h"
#include "users.h"

#define PASSWORD_MAX 1024

/* Reads a line without its newline; 0 on success. */
static int read_line(FILE *f, char *buf, size_t n)
{
    if (!fgets(buf, (int)n, f))
        return -1;
    size_t len = strlen(buf);
    if (len && buf[len - 1] == '\n')
        buf[--len] = '\0';
    else if (len == n - 1)
        return -1;   /* longer than the buffer */
    if (len && buf[len - 1] == '\r')
        buf[--len] = '\0';
    return 0;
}

static int prompt_hidden(const char *prompt, char *buf, size_t n)
{
    struct termios old, quiet;
    fputs(prompt, stderr);
    fflush(stderr);
    if (tcgetattr(STDIN_FILENO, &old) != 0)
        return read_line(stdin, buf, n);
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
    int rc = read_line(stdin, buf, n);
    tcsetattr(STDIN_FILENO, TCSANOW, &old);
    fputc('\n', stderr);
    return rc;
}

/* The password: generated (and printed once), prompted twice on a
 * terminal, or the first line of standard input. */
static int get_password(int generate, char *pw, size_t n, int *generated)
{
    *generated = 0;
    if (generate) {
        if (ars_crypto_random_hex(pw, 12))
            return ctl_fail(CTL_FAILED, "no random source");
        *generated = 1;
        return CTL_OK;
    }
    if (isatty(STDIN_FILENO)) {
        char again[PASSWORD_MAX + 2];
        if (prompt_hidden("Password: ", pw, n) || prompt_hidden("Repeat password: ", again, sizeof(again)))
            return ctl_fail(CTL_USAGE, "no password read");
        if (strcmp(pw, again) != 0)
            return ctl_fail(CTL_USAGE, "the passwords differ");
        return CTL_OK;
    }
    if (read_line(stdin, pw, n))
        return ctl_fail(CTL_USAGE, "expected the password on the first line of standard input (at most %d bytes)",
                        PASSWORD_MAX);
    return CTL_OK;
}

int ctl_admin(struct ctl *c, int argc, char **argv)
{
    const char *role = ctl_take_option(&argc, argv, "--role");
    int generate = ctl_take_flag(&argc, argv, "--generate");
    if (argc < 3 || !strcmp(argv[1], "--help")) {
        printf("usage: ai-relayctl admin create USER [--role admin|operator|viewer] [--generate]\n"
               "       ai-relayctl admin reset-password USER [--generate]\n"
               "The password is read from the terminal (twice), or from the first line of standard\n"
               "input, or generated with --generate and printed once. At least 8 characters.\n");
        return argc < 3 ? CTL_USAGE : CTL_OK;
    }
    const char *sub = argv[1], *user = argv[2];
    int create = !strcmp(sub, "create");
    if (!create && strcmp(sub, "reset-password"))
        return ctl_fail(CTL_USAGE, "admin: unknown subcommand '%s'", sub);
    if (create && !role)
        role = "admin";
    if (create && !ars_user_role_ok(role))
        return ctl_fail(CTL_USAGE, "--role: expected admin, operator or viewer");
    char pw[PASSWORD_MAX + 2];
    int generated;
    int rc = get_password(generate, pw, sizeof(pw), &generated);
    if (rc)
        return rc;
    char err[512];
    enum ars_err e = create ? ars_users_create(c->redis, c->cfg, user, pw, role, err, sizeof(err))
                            : ars_users_set_password(c->redis, c->cfg, user, pw, err, sizeof(err));
    if (e) {
        memset(pw, 0, sizeof(pw));
        return ctl_fail(ctl_code_for(e), "%s", err);
    }
    if (create)
        printf("admin user %s created (role %s)\n", user, role);
    else
        printf("password of %s changed\n", user);
    if (generated)
        printf("password: %s\n", pw);
    memset(pw, 0, sizeof(pw));
    return CTL_OK;
}
