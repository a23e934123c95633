/*
 * rtp_phones: the phones of the media relay benchmark (bench/bench_media.py).
 *
 * Plays both phones of CALLS bridged G.711 calls: every phone sends a
 * 172-byte RTP packet every 20 ms to its leg of the relay and times every
 * packet the relay delivers to it. A Python load generator saturates near
 * 200 calls; this one offers thousands of calls for a fraction of a core, so
 * that the relay, not the generator, is what the benchmark measures.
 *
 * Cheap by construction: phones share SOCKETS sockets (phone p sends from
 * and receives on socket p % SOCKETS), packets leave in sendmmsg batches
 * every TICK_NS and are read with recvmmsg. Timing stays exact despite the
 * batching: each packet carries its send time, and the kernel stamps its
 * arrival (SO_TIMESTAMPNS), so a late read does not count as transit time.
 * The phones of a call are spread evenly over the 20 ms period, as
 * independent calls would be.
 *
 * Protocol on stdin/stdout (one line each):
 *   out: the SOCKETS local ports, separated by spaces
 *   in:  2 * CALLS relay ports: phone 2i (caller of call i) sends to the
 *        first, phone 2i + 1 (its buyer) to the second
 *   out: "start", then "stop" when the last packet is sent, then after
 *        DRAIN_NS the results as "key value" lines and "end".
 * Payload of each packet: send time (CLOCK_REALTIME, ns, 8 bytes), phone
 * index (4 bytes), then 0xff (u-law silence); the relay may rewrite the RTP
 * header but must deliver the payload intact.
 *
 * Usage: rtp_phones CALLS SECONDS SOCKETS HOST
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "udp_ports.h"

#define PACKET 172
#define HEADER 12
#define PERIOD_NS 20000000LL
#define TICK_NS 200000LL
#define DRAIN_NS 500000000LL
#define LATE_NS 1000000LL
#define BATCH 256
#define HISTOGRAM_US 200000 /* transit histogram in 1 us buckets up to 200 ms */
#define RECV_BUFFER (4 << 20)

struct stream {
    uint64_t sent;
    uint64_t received;
    int64_t last_transit; /* ns, -1 before the first packet */
    double jitter;        /* RFC 3550 A.8 interarrival jitter, ns */
};

struct batch {
    struct mmsghdr msgs[BATCH];
    struct iovec iovs[BATCH];
    unsigned char packets[BATCH][PACKET];
    int count;
};

static int64_t now_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint64_t sent_total, send_failed, late, received_total, invalid, overflow;
static int64_t max_late;
static uint32_t *histogram;
static struct stream *streams;
static int phones;

static void flush(int fd, struct batch *batch) {
    int64_t stamp = now_ns(CLOCK_REALTIME);
    int done = 0;
    for (int i = 0; i < batch->count; i++)
        memcpy(batch->packets[i] + HEADER, &stamp, sizeof stamp);
    while (done < batch->count) {
        int n = sendmmsg(fd, batch->msgs + done, batch->count - done, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            /* A full buffer or an ICMP error: count the rest of the batch as not sent. */
            send_failed += batch->count - done;
            break;
        }
        done += n;
    }
    sent_total += done;
    batch->count = 0;
}

static uint32_t *dropped; /* per socket: datagrams the kernel dropped, its buffer full */

static void receive(int fd, int fd_index) {
    static struct mmsghdr msgs[BATCH];
    static struct iovec iovs[BATCH];
    static unsigned char buffers[BATCH][2048];
    static unsigned char controls[BATCH][CMSG_SPACE(sizeof(struct timespec)) +
                                         CMSG_SPACE(sizeof(uint32_t))];
    static int ready;
    if (!ready) {
        for (int i = 0; i < BATCH; i++) {
            iovs[i].iov_base = buffers[i];
            iovs[i].iov_len = sizeof buffers[i];
            msgs[i].msg_hdr.msg_iov = &iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_control = controls[i];
            msgs[i].msg_hdr.msg_controllen = sizeof controls[i];
        }
        ready = 1;
    }
    for (;;) {
        int n = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0)
            return;
        int64_t fallback = now_ns(CLOCK_REALTIME);
        for (int i = 0; i < n; i++) {
            unsigned char *data = buffers[i];
            int64_t stamp, arrival = fallback;
            uint32_t phone;
            if (msgs[i].msg_len != PACKET || (data[0] >> 6) != 2) {
                invalid++;
                continue;
            }
            memcpy(&stamp, data + HEADER, sizeof stamp);
            memcpy(&phone, data + HEADER + 8, sizeof phone);
            if (phone >= (uint32_t)phones) {
                invalid++;
                continue;
            }
            for (struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c;
                 c = CMSG_NXTHDR(&msgs[i].msg_hdr, c)) {
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
                    struct timespec ts;
                    memcpy(&ts, CMSG_DATA(c), sizeof ts);
                    arrival = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
                } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
                    memcpy(&dropped[fd_index], CMSG_DATA(c), sizeof dropped[fd_index]);
                }
            }
            int64_t transit = arrival - stamp;
            if (transit < 0)
                transit = 0;
            int64_t bucket = transit / 1000;
            if (bucket >= HISTOGRAM_US) {
                overflow++;
            } else {
                histogram[bucket]++;
            }
            struct stream *s = &streams[phone];
            s->received++;
            if (s->last_transit >= 0) {
                double d = (double)llabs(transit - s->last_transit);
                s->jitter += (d - s->jitter) / 16.0;
            }
            s->last_transit = transit;
            received_total++;
        }
        for (int i = 0; i < n; i++) /* the kernel shortened them to what it wrote */
            msgs[i].msg_hdr.msg_controllen = sizeof controls[i];
        if (n < BATCH)
            return;
    }
}

static double percentile(double fraction) {
    uint64_t rank = (uint64_t)(fraction * (double)received_total), seen = 0;
    for (int i = 0; i < HISTOGRAM_US; i++) {
        seen += histogram[i];
        if (seen > rank)
            return i;
    }
    return HISTOGRAM_US;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s CALLS SECONDS SOCKETS HOST\n", argv[0]);
        return 2;
    }
    int calls = atoi(argv[1]);
    double seconds = atof(argv[2]);
    int nsockets = atoi(argv[3]);
    const char *host = argv[4];
    if (calls <= 0 || seconds <= 0 || nsockets <= 0) {
        fprintf(stderr, "CALLS, SECONDS and SOCKETS must be positive\n");
        return 2;
    }
    phones = 2 * calls;
    if (nsockets > phones)
        nsockets = phones;

    int *fds = calloc(nsockets, sizeof *fds);
    dropped = calloc(nsockets, sizeof *dropped);
    struct batch *batches = calloc(nsockets, sizeof *batches);
    struct sockaddr_in *targets = calloc(phones, sizeof *targets);
    streams = calloc(phones, sizeof *streams);
    histogram = calloc(HISTOGRAM_US, sizeof *histogram);
    if (!fds || !dropped || !batches || !targets || !streams || !histogram)
        die("calloc");

    struct sockaddr_in local = local_address(host);
    for (int i = 0; i < nsockets; i++) {
        int on = 1, size = RECV_BUFFER;
        fds[i] = socket(AF_INET, SOCK_DGRAM, 0);
        if (fds[i] < 0)
            die("socket");
        setsockopt(fds[i], SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
        setsockopt(fds[i], SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
        if (setsockopt(fds[i], SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on) < 0)
            die("SO_TIMESTAMPNS");
        if (setsockopt(fds[i], SOL_SOCKET, SO_RXQ_OVFL, &on, sizeof on) < 0)
            die("SO_RXQ_OVFL");
        bind_and_print(fds[i], &local, i == 0);
    }
    printf("\n");
    fflush(stdout);

    read_ports(targets, phones, &local, "relay");
    for (int p = 0; p < phones; p++)
        streams[p].last_transit = -1;

    struct rusage usage_start, usage_end;
    getrusage(RUSAGE_SELF, &usage_start);
    printf("start\n");
    fflush(stdout);
    int64_t start = now_ns(CLOCK_MONOTONIC), end = start + (int64_t)(seconds * 1e9);
    int64_t next_tick = start;
    uint64_t due_index = 0; /* packet j goes from phone j % phones at start + j * PERIOD / phones */
    int64_t until = end + DRAIN_NS;
    int sending = 1;
    for (;;) {
        int64_t now = now_ns(CLOCK_MONOTONIC);
        if (sending) {
            for (;;) {
                int64_t due = start + (int64_t)(due_index * PERIOD_NS / phones);
                if (due > now || due >= end)
                    break;
                int phone = (int)(due_index % phones);
                uint64_t seq = due_index / phones;
                int fd_index = phone % nsockets;
                struct batch *batch = &batches[fd_index];
                unsigned char *packet = batch->packets[batch->count];
                packet[0] = 0x80;
                packet[1] = 0;
                uint16_t seq16 = htons((uint16_t)seq);
                uint32_t ts = htonl((uint32_t)(seq * 160)), ssrc = htonl((uint32_t)phone);
                uint32_t index = (uint32_t)phone;
                memcpy(packet + 2, &seq16, 2);
                memcpy(packet + 4, &ts, 4);
                memcpy(packet + 8, &ssrc, 4);
                memcpy(packet + HEADER + 8, &index, 4);
                memset(packet + HEADER + 12, 0xff, PACKET - HEADER - 12);
                batch->iovs[batch->count].iov_base = packet;
                batch->iovs[batch->count].iov_len = PACKET;
                memset(&batch->msgs[batch->count].msg_hdr, 0, sizeof(struct msghdr));
                batch->msgs[batch->count].msg_hdr.msg_iov = &batch->iovs[batch->count];
                batch->msgs[batch->count].msg_hdr.msg_iovlen = 1;
                batch->msgs[batch->count].msg_hdr.msg_name = &targets[phone];
                batch->msgs[batch->count].msg_hdr.msg_namelen = sizeof targets[phone];
                batch->count++;
                streams[phone].sent++;
                if (now - due > LATE_NS)
                    late++;
                if (now - due > max_late)
                    max_late = now - due;
                if (batch->count == BATCH)
                    flush(fds[fd_index], batch);
                due_index++;
            }
            for (int i = 0; i < nsockets; i++)
                if (batches[i].count)
                    flush(fds[i], &batches[i]);
            if (now >= end) {
                sending = 0;
                getrusage(RUSAGE_SELF, &usage_end);
                printf("stop\n");
                fflush(stdout);
            }
        }
        for (int i = 0; i < nsockets; i++)
            receive(fds[i], i);
        if (now >= until)
            break;
        next_tick += TICK_NS;
        if (next_tick < now)
            next_tick = now; /* behind: go on at once, the late count tells */
        struct timespec wake = {next_tick / 1000000000LL, next_tick % 1000000000LL};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &wake, NULL) == EINTR)
            ;
    }

    double user = (usage_end.ru_utime.tv_sec - usage_start.ru_utime.tv_sec) +
                  (usage_end.ru_utime.tv_usec - usage_start.ru_utime.tv_usec) / 1e6;
    double system = (usage_end.ru_stime.tv_sec - usage_start.ru_stime.tv_sec) +
                    (usage_end.ru_stime.tv_usec - usage_start.ru_stime.tv_usec) / 1e6;
    double jitter = 0;
    int lossy = 0;
    for (int p = 0; p < phones; p++) {
        jitter += streams[p].jitter;
        if (streams[p].received < streams[p].sent)
            lossy++;
    }
    printf("sent %llu\n", (unsigned long long)sent_total);
    printf("received %llu\n", (unsigned long long)received_total);
    printf("send_failed %llu\n", (unsigned long long)send_failed);
    printf("invalid %llu\n", (unsigned long long)invalid);
    uint64_t overflowed = 0;
    for (int i = 0; i < nsockets; i++)
        overflowed += dropped[i];
    printf("phones_dropped %llu\n", (unsigned long long)overflowed);
    printf("late %llu\n", (unsigned long long)late);
    printf("max_late_us %.0f\n", max_late / 1e3);
    printf("lossy_streams %d\n", lossy);
    printf("transit_p50_us %.0f\n", percentile(0.5));
    printf("transit_p99_us %.0f\n", percentile(0.99));
    printf("transit_p999_us %.0f\n", percentile(0.999));
    printf("transit_over_200ms %llu\n", (unsigned long long)overflow);
    printf("jitter_us %.1f\n", jitter / phones / 1e3);
    printf("cpu_user_seconds %.3f\n", user);
    printf("cpu_system_seconds %.3f\n", system);
    printf("end\n");
    fflush(stdout);
    return 0;
}
