/* SPDX-License-Identifier: MIT */
/*
 * closed_port(): a TCP port on 127.0.0.1 with no listener (bound, then closed), for tests that
 * make librdkafka fail to connect (t-consumer, t-producer-mock). Returns -1 if none was found.
 */
#ifndef KTS_TEST_CLOSED_PORT_H
#define KTS_TEST_CLOSED_PORT_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

static inline int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

#endif
