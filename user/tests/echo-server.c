// A TCP echo server for the network case: listens on 0.0.0.0:7777, answers every
// connection with what it reads (one epoll loop, non-blocking sockets), and exits after
// the number of connections given as its argument have come and gone. The host connects
// to it through QEMU's hostfwd.
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define PORT 7777

int main(int argc, char **argv) {
    int want = argc > 1 ? atoi(argv[1]) : 1;
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(PORT)};
    if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 128)) {
        perror("echo-server: bind/listen");
        return 1;
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = s};
    epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
    printf("echo-server: listening on %d\n", PORT);
    fflush(stdout);
    int served = 0, open = 0, most = 0;
    long bytes = 0;
    struct epoll_event events[64];
    static char buf[65536];
    while (served < want) {
        int n = epoll_wait(ep, events, 64, 60000);
        if (n <= 0) {
            printf("echo-server: epoll_wait %d (%s) after %d connections, %d open\n", n,
                   n ? strerror(errno) : "timeout", served, open);
            return 1;
        }
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == s) {
                int c;
                while ((c = accept4(s, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    struct epoll_event cev = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
                    if (++open > most)
                        most = open;
                }
                continue;
            }
            for (;;) {
                ssize_t got = read(fd, buf, sizeof buf);
                if (got > 0) {
                    bytes += got;
                    // Blocking writes keep it simple: the client reads as it sends.
                    ssize_t done = 0;
                    while (done < got) {
                        ssize_t w = write(fd, buf + done, got - done);
                        if (w < 0 && errno == EAGAIN) {
                            // Wait for room (the client reads as it sends).
                            struct pollfd p = {.fd = fd, .events = POLLOUT};
                            if (poll(&p, 1, 30000) != 1) {
                                printf("echo-server: no room to write for 30 s\n");
                                return 1;
                            }
                            continue;
                        }
                        if (w <= 0)
                            break;
                        done += w;
                    }
                    continue;
                }
                if (got < 0 && errno == EAGAIN)
                    break;
                close(fd);
                open--;
                served++;
                break;
            }
        }
    }
    printf("echo-server: served %d connections, %ld bytes, up to %d at once\n", served, bytes,
           most);
    close(s);
    return 0;
}
