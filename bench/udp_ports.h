/*
 * udp_ports.h: what the media benchmark's two C helpers (rtp_phones.c,
 * udp_relay.c) share. Both bind IPv4 UDP sockets on HOST, print their ports
 * on one line of stdout, and read the other side's ports from one line of
 * stdin (bench/bench_media.py passes them along).
 */
#ifndef CALLWHISPER_UDP_PORTS_H
#define CALLWHISPER_UDP_PORTS_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

static void die(const char *what) {
    perror(what);
    exit(1);
}

/* HOST with port 0: where every socket binds; exits with status 2 if HOST is not IPv4. */
static struct sockaddr_in local_address(const char *host) {
    struct sockaddr_in local = {.sin_family = AF_INET};
    if (inet_pton(AF_INET, host, &local.sin_addr) != 1) {
        fprintf(stderr, "HOST must be an IPv4 address\n");
        exit(2);
    }
    return local;
}

/* Binds FD to LOCAL and prints the port the kernel chose, after a space unless FIRST. */
static void bind_and_print(int fd, const struct sockaddr_in *local, int first) {
    if (bind(fd, (const struct sockaddr *)local, sizeof *local) < 0)
        die("bind");
    struct sockaddr_in bound;
    socklen_t length = sizeof bound;
    getsockname(fd, (struct sockaddr *)&bound, &length);
    printf(first ? "%d" : " %d", ntohs(bound.sin_port));
}

/* Reads COUNT ports from stdin as addresses on LOCAL's host; exits with status 2 if short. */
static void read_ports(struct sockaddr_in *addresses, int count, const struct sockaddr_in *local,
                       const char *whose) {
    for (int i = 0; i < count; i++) {
        int port;
        if (scanf("%d", &port) != 1 || port <= 0 || port > 65535) {
            fprintf(stderr, "expected %d %s ports on stdin\n", count, whose);
            exit(2);
        }
        addresses[i] = *local;
        addresses[i].sin_port = htons(port);
    }
}

#endif
