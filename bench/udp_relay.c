/*
 * udp_relay: the floor of the media relay benchmark (bench/bench_media.py).
 *
 * The least a user-space relay with one socket per call leg can do: one
 * epoll set over every socket, and per readiness one recvfrom and one
 * sendto of the datagram, unchanged, to the other leg's phone. No latching,
 * statistics or renumbering. What it costs per packet is the kernel's price
 * on the machine at hand, which no relay written in any language avoids.
 *
 * Protocol on stdin/stdout (one line each):
 *   out: the 2 * CALLS local ports (leg 2i and 2i + 1 are call i's)
 *   in:  the 2 * CALLS phone ports: what leg j reads goes to phone j ^ 1
 *   out: "ready"
 *   then, any number of times, in: "cpu", out: this process's CPU seconds
 *   so far (user + system); in: "quit" or end of input ends the process.
 *
 * Usage: udp_relay CALLS HOST
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

#include "udp_ports.h"

#define EVENTS 256
#define STDIN_KEY 0xffffffffu

static double cpu_seconds(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 + usage.ru_stime.tv_sec +
           usage.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s CALLS HOST\n", argv[0]);
        return 2;
    }
    int legs = 2 * atoi(argv[1]);
    if (legs <= 0) {
        fprintf(stderr, "CALLS must be positive\n");
        return 2;
    }
    struct sockaddr_in local = local_address(argv[2]);
    int *fds = calloc(legs, sizeof *fds);
    struct sockaddr_in *phones = calloc(legs, sizeof *phones);
    if (!fds || !phones)
        die("calloc");
    int epoll = epoll_create1(0);
    if (epoll < 0)
        die("epoll_create1");
    for (int i = 0; i < legs; i++) {
        fds[i] = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        if (fds[i] < 0)
            die("socket");
        bind_and_print(fds[i], &local, i == 0);
    }
    printf("\n");
    fflush(stdout);
    read_ports(phones, legs, &local, "phone");
    for (int i = 0; i < legs; i++) {
        struct epoll_event event = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(epoll, EPOLL_CTL_ADD, fds[i], &event) < 0)
            die("epoll_ctl");
    }
    /* Nothing more may be written before this answer: stdio must not buffer a command. */
    printf("ready\n");
    fflush(stdout);
    struct epoll_event input = {.events = EPOLLIN, .data.u32 = STDIN_KEY};
    if (epoll_ctl(epoll, EPOLL_CTL_ADD, STDIN_FILENO, &input) < 0)
        die("epoll_ctl stdin");

    struct epoll_event events[EVENTS];
    unsigned char buffer[2048];
    char line[64];
    for (;;) {
        int n = epoll_wait(epoll, events, EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int k = 0; k < n; k++) {
            uint32_t leg = events[k].data.u32;
            if (leg == STDIN_KEY) {
                /* Raw reads: one command at a time, each waiting for its answer. */
                ssize_t got = read(STDIN_FILENO, line, sizeof line - 1);
                if (got <= 0 || strncmp(line, "quit", 4) == 0)
                    return 0;
                if (strncmp(line, "cpu", 3) == 0) {
                    printf("%.6f\n", cpu_seconds());
                    fflush(stdout);
                }
                continue;
            }
            ssize_t length = recv(fds[leg], buffer, sizeof buffer, 0);
            if (length < 0)
                continue; /* nothing waiting, or a previous send's ICMP error */
            /* The datagram read on leg j goes out of leg j ^ 1 to that leg's phone. */
            sendto(fds[leg ^ 1], buffer, (size_t)length, 0,
                   (struct sockaddr *)&phones[leg ^ 1], sizeof phones[leg ^ 1]);
        }
    }
}
