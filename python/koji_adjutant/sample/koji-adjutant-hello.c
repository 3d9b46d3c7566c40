/* koji-adjutant-hello: the sample program of koji-adjutant's README demo. */
#include <stdio.h>

int main(int argc, char **argv)
{
    const char *who = argc > 1 ? argv[1] : "Koji";
    printf("Hello, %s! Built by koji-adjutant in a Podman container.\n", who);
    return 0;
}
